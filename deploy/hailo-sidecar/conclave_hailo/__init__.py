"""The Conclave Hailo sidecar: serves HailoRT to the node agent on a 0600 unix socket.

The protocol is proto/conclave/v1/hailo_sidecar.proto; the install notes are ../README.md.
"""
