"""Negotiation with an AI critic (Fu et al.): bargaining games between models, a moderator and a price
reader that score them, and rounds in which a critic's advice is meant to make one player better."""
