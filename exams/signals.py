"""Signals the exams stage sends for later stages, which exams must not import
(dependencies flow catalog <- cases <- exams <- issuance).

`session_approved` is sent after the approval commits, with the ids of the cases it
passed; issuance connects a receiver that only dispatches its task. A lost signal (the
process died after commit) is caught by issuance's beat sweep, which opens certificates
for any passed case that has none.
"""

from django.dispatch import Signal

session_approved = Signal()  # kwargs: session_id: int, passed_case_ids: list[int]
