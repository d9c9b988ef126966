"""tokenwarden.http"""
