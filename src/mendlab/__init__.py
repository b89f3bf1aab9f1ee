"""mendlab: when a chat LLM makes a mistake and you tell it so, does it fix it?"""

__version__ = "0.1.0"
