"""Community discussions (议事厅): topics of a committee (optionally one compound or building) among
verified neighbours, who appear to each other by building only; staff by role, and staff see who
wrote what. Comments with one level of replies, reports that hide a comment after N residents,
staff moderation (hide / restore with a reason, lock, mute), digests for subscribers.

The modules, by sub-domain:

- ``config``: :class:`DiscussionConfig`, built once by the composition root;
- ``common``: the refusal type and :class:`Author` (who wrote something, as a reader may see it);
- ``topics``: audience, opening and proposing, approval, locking, the committee setting, the list;
- ``comments``: writing, a topic's page of comments, reports, hiding, restoring, mutes;
- ``digest``: subscriptions and the digest tick.
"""

from services.discussions.comments import (
    CommentResult,
    CommentView,
    HiddenItem,
    MuteResult,
    ReportResult,
    TopicView,
    add_comment,
    check_can_comment,
    hidden_by_reports,
    hide_comment,
    mute_author,
    report_comment,
    restore_comment,
    topic_view,
)
from services.discussions.common import REF_TOPIC, Author, DiscussionError
from services.discussions.config import DiscussionConfig
from services.discussions.digest import DigestReport, subscribe, tick
from services.discussions.topics import (
    SCOPES,
    TopicDraft,
    TopicItem,
    TopicPage,
    TopicResult,
    check_body,
    check_can_open,
    check_title,
    comment_count,
    create_topic,
    decide_topic,
    list_topics,
    residents_publish,
    set_locked,
    set_residents_publish,
    staff_committee,
)

__all__ = [
    "REF_TOPIC",
    "SCOPES",
    "Author",
    "CommentResult",
    "CommentView",
    "DigestReport",
    "DiscussionConfig",
    "DiscussionError",
    "HiddenItem",
    "MuteResult",
    "ReportResult",
    "TopicDraft",
    "TopicItem",
    "TopicPage",
    "TopicResult",
    "TopicView",
    "add_comment",
    "check_body",
    "check_can_comment",
    "check_can_open",
    "check_title",
    "comment_count",
    "create_topic",
    "decide_topic",
    "hidden_by_reports",
    "hide_comment",
    "list_topics",
    "mute_author",
    "report_comment",
    "residents_publish",
    "restore_comment",
    "set_locked",
    "set_residents_publish",
    "staff_committee",
    "subscribe",
    "tick",
    "topic_view",
]
