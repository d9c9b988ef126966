"""Delivery channels for lifecycle notifications: SMTP email and signed webhooks."""

from tokenwarden.adapters.notify.smtp import SmtpEmailSender
from tokenwarden.adapters.notify.webhook import HttpWebhookSender

__all__ = ["HttpWebhookSender", "SmtpEmailSender"]
