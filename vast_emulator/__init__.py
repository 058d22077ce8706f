"""A local emulator of the Vast.ai control plane whose instances are real sshd hosts.

Run it with ``python -m vast_emulator --port 0 --state-dir DIR``; see docs/emulator.md.
"""
