"""All ORM models; importing this package registers every table on ``Base.metadata``."""

from services.models.base import Base, BigId, UTCDateTime
from services.models.checkins import (  # noqa: F401
    Alert,
    AlertLevel,
    AlertOutcome,
    AlertReason,
    AlertStatus,
    AnswerMode,
    CheckinPlan,
    CheckinRound,
    EmergencyContact,
    FamilyInvite,
    HelperHandover,
    HelperInvite,
    HelperRole,
    RoundEvent,
    RoundStatus,
    WeeklyReportClaim,
)
from services.models.console import ConsoleLink, ConsoleSession  # noqa: F401
from services.models.conversations import Conversation  # noqa: F401
from services.models.core import (
    LEVEL_ORDER,
    SEGMENT_INDEX_COLUMNS,
    Account,
    AuditLog,
    Household,
    Region,
    RegionLevel,
    Resident,
    ResidentStatus,
    Staff,
    StaffRole,
)
from services.models.discussions import (  # noqa: F401
    Comment,
    CommentReport,
    DiscussionMute,
    DiscussionSetting,
    Poll,
    PollStatus,
    PollTally,
    PollUnit,
    PollVote,
    PollVoter,
    Topic,
    TopicStatus,
    TopicSubscription,
)
from services.models.jobs import JobRun  # noqa: F401
from services.models.notices import Notice, NoticeRecipient, NoticeStatus  # noqa: F401
from services.models.outbox import FINAL_STATUSES, OutboxMessage, OutboxStatus  # noqa: F401
from services.models.policies import (  # noqa: F401
    CaseStatus,
    Policy,
    PolicyAnswer,
    PolicyCase,
    PolicyConsent,
    PolicyField,
    PolicyFieldType,
    PolicyVersion,
)
from services.models.registry import RegistryImport  # noqa: F401
from services.models.tags import ResidentTag, Segment, Tag, TagKind
from services.models.updates import ProcessedUpdate  # noqa: F401
from services.models.verification import (  # noqa: F401
    HouseholdInvite,
    RequestStatus,
    StaffInvite,
    VerificationAttempt,
    VerificationRequest,
)

__all__ = [
    "LEVEL_ORDER",
    "SEGMENT_INDEX_COLUMNS",
    "Account",
    "AuditLog",
    "Base",
    "BigId",
    "Household",
    "Region",
    "RegionLevel",
    "Resident",
    "ResidentStatus",
    "ResidentTag",
    "Segment",
    "Staff",
    "StaffRole",
    "Tag",
    "TagKind",
    "UTCDateTime",
]
