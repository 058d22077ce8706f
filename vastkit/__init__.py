"""Vast.ai client shared by the Ansible modules, the inventory plugin and the on-instance supervisor."""
