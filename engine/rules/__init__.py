"""Rule packs: facts, conditions, templates, and the loader that validates them."""
