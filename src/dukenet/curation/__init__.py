"""The curation queue: results worth a curator's look, and curators' decisions on them."""
