"""The actions of each namespace, which the namespace functions and $default (Socket.IO) perform."""
