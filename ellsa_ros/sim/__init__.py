"""LIBERO simulation: the Gymnasium environment, scripted experts, and what runs on them.

Importing this package loads nothing heavy; `ellsa_ros.sim.env` imports robosuite.
"""
