import hashlib


def hash_token(token: str) -> str:
    """Tokens (API sessions, pass web-service tokens) are stored only as their SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()
