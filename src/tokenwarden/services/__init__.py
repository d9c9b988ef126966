"""tokenwarden.services"""
