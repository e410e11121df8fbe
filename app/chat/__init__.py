"""Fan chat rooms per artist and concert: STOMP 1.2 over WebSocket, fan-out through Redis."""
