"""Paper §4: the RLBFF prompt, the scalar principle RM, the Bradley-Terry baseline (Secrets of RLHF II
options), the GenRM, one scorer loader for every user, accuracy, and the scoring / judge servers.
"""
