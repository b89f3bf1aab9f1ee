"""Our own iGSM vocabulary: 4 chains of 4 layered categories, 20 item names each (320 items).

A problem picks one chain and 2-4 consecutive layers of it; an item of layer i "has" items of layer i+1
("each Riverside's Fresh Mart"). Names are written by hand rather than taken from the paper's generator so
that nothing is downloaded; the rules the generator and the tokenizer rely on: every name is unique across
the whole vocabulary, no name is a category name, and no name holds a period, a digit, an apostrophe or
the word "as" (so "Define NAME as x" and "A's B" always parse back to one parameter).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    category: str  # the abstract name: "How many Product does Riverside have?"
    items: tuple[str, ...]


def _layer(category: str, items: str) -> Layer:
    return Layer(category, tuple(s.strip() for s in items.split(",")))


CHAINS: tuple[tuple[Layer, ...], ...] = (
    (
        _layer(
            "District",
            "Riverside, Oakwood, Hillcrest, Lakeview, Brookside, Maple Grove, Stonebridge, Fairview, Elmwood, "
            "Westfield, Northgate, Sunnydale, Pinecrest, Ashford, Kingsbury, Redwood, Meadowbrook, Clearwater, "
            "Silverton, Harborview",
        ),
        _layer(
            "Supermarket",
            "Fresh Mart, Green Grocer, Value Foods, Corner Market, Golden Basket, Daily Harvest, Urban Pantry, "
            "Family Fare, Sun Market, Metro Foods, Prime Grocer, Happy Cart, Farm Stand, Star Market, Quick Shop, "
            "Nature Store, City Larder, Best Basket, Good Foods, Market Square",
        ),
        _layer(
            "Product",
            "Tomato Soup, Apple Pie, Cheese Pizza, Granola Bar, Veggie Burger, Fruit Salad, Chicken Curry, "
            "Pasta Sauce, Rice Pudding, Banana Bread, Corn Chowder, Lemon Tart, Peanut Cookie, Onion Dip, "
            "Berry Jam, Garlic Bread, Pumpkin Muffin, Bean Chili, Potato Salad, Mushroom Risotto",
        ),
        _layer(
            "Ingredient",
            "Flour, Sugar, Butter, Salt, Honey, Yeast, Olive Oil, Vinegar, Basil, Cinnamon, Black Pepper, Ginger, "
            "Paprika, Oregano, Cream, Milk Powder, Cocoa, Vanilla, Nutmeg, Mustard",
        ),
    ),
    (
        _layer(
            "School",
            "Central High, Lincoln Academy, Westside Middle, Oak Ridge School, Valley Prep, Summit High, "
            "Jefferson School, Harbor Academy, Cedar Middle, Franklin High, Pioneer School, Grandview Prep, "
            "Eastlake High, Madison Academy, Willow School, Hamilton Middle, Bayside High, Crestwood Prep, "
            "Liberty School, Riverbend Academy",
        ),
        _layer(
            "Classroom",
            "Art Studio, Film Studio, Dance Studio, Music Room, Science Lab, Computer Lab, History Room, "
            "Drama Studio, Chemistry Lab, Reading Room, Robotics Lab, Math Room, Biology Lab, Language Room, "
            "Craft Room, Physics Lab, Geography Room, Debate Room, Poetry Room, Media Room",
        ),
        _layer(
            "Backpack",
            "School Daypack, Messenger Backpack, Hiking Pack, Rolling Backpack, Sling Bag, Laptop Backpack, "
            "Canvas Rucksack, Mini Backpack, Drawstring Bag, Travel Pack, Sports Backpack, Leather Satchel, "
            "Camping Rucksack, Tote Pack, Hydration Pack, Book Bag, Duffel Backpack, Cycling Pack, Day Sack, "
            "Trail Pack",
        ),
        _layer(
            "Stationery",
            "Pencil, Eraser, Ruler, Marker, Notebook, Highlighter, Stapler, Glue Stick, Crayon, Sharpener, "
            "Protractor, Compass, Scissors, Paper Clip, Sticky Note, Ballpoint Pen, Binder, Index Card, "
            "Tape Roll, Folder",
        ),
    ),
    (
        _layer(
            "Zoo",
            "Bronx Zoo, Sunset Zoo, Granite Zoo, Safari Park, Jungle World, Wildlife Garden, Prairie Zoo, "
            "Coastal Zoo, Mountain Zoo, Desert Zoo, Forest Zoo, Island Zoo, Tundra Park, Savanna Park, Canyon Zoo, "
            "River Zoo, Polar Park, Meadow Zoo, Rainforest Park, Highland Zoo",
        ),
        _layer(
            "Enclosure",
            "Reptile House, Bird Aviary, Monkey Island, Big Cat Den, Aquarium Hall, Insect Dome, Bear Cave, "
            "Penguin Pool, Elephant Yard, Giraffe Paddock, Nocturnal House, Butterfly Garden, Wolf Woods, "
            "Otter Creek, Lion Ridge, Tiger Trail, Panda Grove, Kangaroo Field, Seal Cove, Bat Barn",
        ),
        _layer(
            "Animal",
            "Zebra, Lion, Tiger, Giraffe, Elephant, Panda, Koala, Kangaroo, Penguin, Flamingo, Gorilla, Cheetah, "
            "Hippo, Rhino, Jaguar, Lemur, Meerkat, Otter, Parrot, Tortoise",
        ),
        _layer(
            "Bone",
            "Skull, Rib, Femur, Tibia, Fibula, Humerus, Radius, Ulna, Pelvis, Spine, Jawbone, Collarbone, "
            "Kneecap, Shoulder Blade, Tail Bone, Ankle Bone, Wrist Bone, Breastbone, Hip Bone, Toe Bone",
        ),
    ),
    (
        _layer(
            "Festival",
            "Harvest Fest, Summer Jam, Winter Gala, Spring Fling, Jazz Week, Folk Fair, Rock Camp, Blues Night, "
            "Lantern Fest, River Carnival, Moon Party, Sunrise Fest, Autumn Fair, Ocean Beats, Starlight Gala, "
            "Mountain Fest, Prairie Days, Coast Carnival, Garden Party, Thunder Fest",
        ),
        _layer(
            "Stage",
            "Main Stage, Tent Stage, Lake Stage, Forest Stage, Acoustic Corner, Dance Tent, Beach Stage, "
            "Hill Stage, Park Stage, Club Tent, Garden Stage, Rooftop Stage, Barn Stage, Pier Stage, Dome Stage, "
            "Plaza Stage, Valley Stage, Meadow Stage, Arena Stage, Cellar Stage",
        ),
        _layer(
            "Band",
            "Iron Owls, Silver Foxes, Night Riders, Blue Comets, Red Rockets, Wild Hearts, Paper Tigers, "
            "Neon Ghosts, Velvet Crows, Golden Wolves, Electric Bees, Crimson Tide, Lunar Echo, Solar Flares, "
            "Midnight Owls, Stone Giants, Copper Kings, Rusty Nails, Glass Lions, Jade Dragons",
        ),
        _layer(
            "Instrument",
            "Guitar, Violin, Cello, Trumpet, Flute, Drum, Piano, Harp, Banjo, Clarinet, Saxophone, Trombone, "
            "Ukulele, Accordion, Tuba, Oboe, Mandolin, Xylophone, Harmonica, Bass Guitar",
        ),
    ),
)


def all_names() -> list[str]:
    """Every category and item name (for the tokenizer's closed vocabulary)."""
    out: list[str] = []
    for chain in CHAINS:
        for layer in chain:
            out.append(layer.category)
            out.extend(layer.items)
    return out


def _validate() -> None:
    names = all_names()
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise AssertionError(f"vocabulary names not unique: {sorted(dup)}")
    for n in names:
        words = n.split(" ")
        if any(not w.isalpha() or not w.isascii() or len(w) < 2 for w in words) or "as" in words:
            raise AssertionError(f"bad vocabulary name {n!r}")


_validate()
