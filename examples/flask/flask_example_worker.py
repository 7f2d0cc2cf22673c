"""What ``kq worker -A flask_example_worker:kq_app`` loads: the Flask app built by the same
factory as the web processes, and its kq App. Tasks then run in this Flask app's context."""

from flask_example_app import create_app

flask_app = create_app()
kq_app = flask_app.extensions["kq"]
