"""An application made by a factory: `[wsgi] app = factory:create_app()`."""


def create_app():
    def application(environ, start_response):
        body = b"made by create_app"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return application
