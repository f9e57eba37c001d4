"""Date and time formats of the site (``FORMAT_MODULE_PATH``): one per language, so every admin
and moderator page writes a date the same way, whether a template prints the value, asks for a
named format (``|date:"SHORT_DATETIME_FORMAT"``) or Python formats it (``formats.date_format``).
"""
