"""English dates as moderators read them: ISO order, 24-hour clock, to the minute (times are
in TIME_ZONE, UTC by default). Both the long and the short names give the same string, so a
page cannot mix two forms by choosing the other name."""

DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
