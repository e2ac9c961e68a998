"""What every web app of eventsignal shares: browser defences, request deadlines and serving.

The cart app and the stream browser are both Starlette apps served by uvicorn; they refuse
cross-site form posts and send the same security headers (:mod:`eventsignal.web.security`), give
clients the same deadline to send a request (:mod:`eventsignal.web.timeouts`), and listen the
same way (:mod:`eventsignal.web.serving`).
"""
