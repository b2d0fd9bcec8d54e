"""Work orders from non-voice channels (WeChat, SMS, web, app, email) and the 110 duty-line
reminder that follows a police matter filed at 12345."""
