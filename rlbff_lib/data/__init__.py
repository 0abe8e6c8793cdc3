"""Feedback sources: HelpSteer3 (hub or local files in the hub's schema) and the synthetic world, validated
record by record.
"""
