"""kq's testing kit: a pytest plugin with fixtures, and contract suites for plugin authors."""
