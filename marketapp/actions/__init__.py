"""Actions shared by robots and scenario steps, by code."""

from __future__ import annotations

from marketapp.actions.base import Action
from marketapp.actions.email import SendEmail
from marketapp.actions.records import EditRecord, TimelineComment
from marketapp.actions.sms import SendSms

ACTIONS: dict[str, Action] = {
    action.code: action for action in (SendEmail(), SendSms(), EditRecord(), TimelineComment())
}
