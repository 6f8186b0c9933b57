"""The label authority: fresh decisions, atomically with the policy in force.

The egress gate (:mod:`onbox.inference.gate`) asks this object for the label of every
document whose bytes are about to leave the machine. It answers from the text that would
be sent, the repo signals as they are on disk now (the classifier re-checks every file a
decision consulted) and the policy in force — and it lets the gate hold :attr:`lock`
from that decision until the bytes are sent, so a policy swap cannot slip in between.

Every label-affecting event (a policy applied, a watched signal file changed, settings
changed, a save) goes through :meth:`invalidate` or :meth:`swap`, which bump
:attr:`generation`; queued work that captured an older generation knows that whatever
it decided before is void.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from onbox.classification.classifier import Classifier
from onbox.classification.decision import Decision, fail_closed
from onbox.classification.policy_model import Policy

logger = logging.getLogger(__name__)


class LabelAuthority:
    """One classifier, one lock, one generation counter (thread-safe)."""

    def __init__(self, classifier: Classifier) -> None:
        self._classifier = classifier
        #: ``documents(uri) -> (text, version)`` of a document open in the editor now, or
        #: ``None``; set by the language server so the gate sees the current text.
        self.documents: Callable[[str], tuple[str, int | None] | None] | None = None
        #: Held by the gate from re-decision to send, and by a policy swap.
        self.lock = threading.RLock()
        self._generation = 0
        self._counter_lock = threading.Lock()

    @property
    def classifier(self) -> Classifier:
        """The classifier every decision comes from."""
        return self._classifier

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self._classifier.policy

    @property
    def generation(self) -> int:
        """Bumped by every label-affecting event."""
        return self._generation

    def decide(
        self, uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision:
        """The decision for ``text`` at ``uri`` under the policy in force (never raises)."""
        try:
            return self._classifier.classify(uri, text, version, language)
        except Exception as exc:  # the classifier fails closed itself; this is the last net
            logger.exception("label authority: classifier failed for %s", uri)
            policy = self._classifier.policy
            return fail_closed(
                policy.scale.highest, f"classifier error: {exc}", policy_id=policy.id
            )

    @property
    def tracking(self) -> bool:
        """Whether :meth:`current` knows which documents are open (a server; not the CLI)."""
        return self.documents is not None

    def current(self, uri: str) -> tuple[str, int | None] | None:
        """The text and version of ``uri`` as the editor has it now (None: not open)."""
        if self.documents is None:
            return None
        try:
            return self.documents(uri)
        except Exception:  # a closed document, a workspace being torn down
            logger.debug("no current text for %s", uri, exc_info=True)
            return None

    def invalidate(self, why: str) -> int:
        """A repo signal, setting or file changed: forget cached decisions; new generation."""
        with self._counter_lock:
            self._generation += 1
            generation = self._generation
        self._classifier.invalidate()
        logger.debug("labels invalidated (%s); generation %d", why, generation)
        return generation

    @contextmanager
    def swap(self, policy: Policy) -> Iterator[None]:
        """Apply ``policy`` while no egress decision is in flight.

        The body runs under the lock and should install whatever was built for the new
        policy (the router); the classifier switches when the body is done. Readers
        that do not take the lock (status, the pipeline) therefore never see labels of
        the new policy with routes of the old one, and the gate, which compares the two,
        sees a mismatch only while this swap is in progress.
        """
        with self.lock:
            yield
            self._classifier.set_policy(policy)
            with self._counter_lock:
                self._generation += 1

    def settled(self) -> None:
        """Return once no policy swap is in progress."""
        with self.lock:
            return
