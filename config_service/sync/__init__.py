"""File sync: `environments/` and `schemas/` folders imported and watched, each file through the rules."""
