"""Where models come from: loading (hub or local), GLU layer discovery, tiny models trained in code."""
