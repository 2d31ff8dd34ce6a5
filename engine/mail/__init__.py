"""Reading mail: the immutable message, its MIME parts, text and charsets, machine mail, sources."""
