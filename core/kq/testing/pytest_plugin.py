"""kq's pytest plugin (entry point ``pytest11``); fixtures are added as the kernel grows."""
