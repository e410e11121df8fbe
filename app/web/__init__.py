"""The fan and organizer web app: plain ES modules and CSS served by the API itself."""
