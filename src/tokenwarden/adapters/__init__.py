"""tokenwarden.adapters"""
