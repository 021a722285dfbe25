"""gunicorn settings read from the working directory by every ``gunicorn`` start
(Dockerfile, compose.yaml, tests/reliability/webserver.py): flags stay on the command line."""

import gunicorn.http.wsgi

# gunicorn has no setting for its "Server: gunicorn" header, which tells a scanner
# which server and parser to probe; the header stays (HTTP allows it) but says nothing.
gunicorn.http.wsgi.SERVER = "tablo"
