"""Sensitivity labels for every file, each explained.

:class:`~onbox.classification.classifier.Classifier` answers a
:class:`~onbox.classification.decision.Decision` (label, reasons, findings) for a
document from these signals, the highest winning:

* the admin policy (:mod:`.policy`): repo rules by normalised git remote (:mod:`.repo`),
  tag and owner maps, the default label — the only signal that may *lower* a label;
* repo-local signals, which can only raise: ``onbox-label``/``onbox-tags`` in
  ``.gitattributes`` (:mod:`.gitattributes`), CODEOWNERS (:mod:`.codeowners`), the
  in-repo ``.onbox.toml`` and ``onbox: <label>`` markers (:mod:`.markers`), and content
  findings — secrets, PII, policy detectors (:mod:`.content`).

:mod:`.report` builds the repository-wide classification exercise (HTML treemap).
The signed policy distribution lives in :mod:`.bundle`, :mod:`.trust`, :mod:`.sources`.

Errors::

    ClassificationError            (onbox.classification.policy_model)
     └── PolicyError               file, line, key of the problem
    PatternError(ValueError)       an unsafe or invalid regex/glob (onbox.classification.patterns)

The classifier itself never raises: failures become default-label decisions.
"""
