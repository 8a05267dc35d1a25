"""The plant's live web page (`plantstream dashboard`): aiohttp glue (server.py) over a pure view model."""
