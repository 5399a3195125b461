"""Typed models. Import every model here so Alembic and ``create_all`` see them."""

from marketapp.db import Base
from marketapp.models.caps import Touch
from marketapp.models.channels import ChannelSettings, FieldEdit, Send, SendState, SmsMessage
from marketapp.models.consent import Suppression
from marketapp.models.launch import (
    Enrollment,
    EnrollmentState,
    Launch,
    LaunchCounter,
    LaunchEvent,
    LaunchState,
)
from marketapp.models.portal import Portal, PortalStatus
from marketapp.models.ratelimit import MethodBudget, RateBucket
from marketapp.models.registration import Registration
from marketapp.models.robot_call import RobotCall, RobotCallState
from marketapp.models.scenario import PortalConstant, Scenario, ScenarioVersion
from marketapp.models.schedule import ScenarioSchedule
from marketapp.models.test_run import TestRun

__all__ = [
    "Base",
    "Enrollment",
    "EnrollmentState",
    "FieldEdit",
    "Launch",
    "LaunchCounter",
    "LaunchEvent",
    "LaunchState",
    "MethodBudget",
    "Portal",
    "ChannelSettings",
    "PortalConstant",
    "PortalStatus",
    "RateBucket",
    "Registration",
    "RobotCall",
    "RobotCallState",
    "Scenario",
    "ScenarioSchedule",
    "ScenarioVersion",
    "Send",
    "SendState",
    "SmsMessage",
    "Suppression",
    "TestRun",
    "Touch",
]
