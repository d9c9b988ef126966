"""tokenwarden.adapters.sql"""
