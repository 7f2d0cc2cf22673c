"""``kq dashboard``: a web page over the fleet, served by the standard library's HTTP server.

:mod:`.state` gathers what the page shows (events, queue depths, worker stats, results) and
acts for it (revoke, retry, rate limits); :mod:`.server` serves it as JSON next to the static
page in ``static/``, which polls that JSON every second. No JavaScript build step, no extra
runtime dependency and no server besides the broker.
"""
