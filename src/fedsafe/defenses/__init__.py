"""fedsafe.defenses"""
