"""principles"""
