"""nnplay's web app: FastAPI routes, websocket sessions and the training scheduler."""
