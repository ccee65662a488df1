"""The dashboard's Insights, computed: how busy the room is, how well questions get answered,
how often the bot's suggestions are taken, and which docs seem to be missing.

Pure: plain records in (``records``, loaded by ``bot.store.insights_queries``), numbers out
(``metrics.compute_insights``, ``doc_gaps.group_doc_gaps``), so each rule can be checked by
hand; ``bot.web.insights`` loads, embeds and renders.

Definitions (the page states the same):

* **Window**: the last ``days`` UTC calendar days, today included. A question belongs to the day
  it was *asked* (its room event's ``origin_ts``), not the day the bot stored it.
* **Answered share**: questions with status ``answered_bot`` or ``answered_person`` over all
  questions asked in the window (dismissed ones included in the denominator).
* **Time to first answer by the bot**: from asking to ``replies.sent_at`` of the bot's sent
  *confident* reply (status ``answered_bot``, or ``answered_by == "bot"``; falls back to
  ``answered_at`` when there is no reply row). The "I'm not sure" note is not an answer: that path
  leaves the status ``new``.
* **Time to first answer by a person**: from asking to the earliest of: a message in the
  question's thread (``m.thread`` relating to it) or a Matrix reply to it, sent by someone other
  than the asker and the bot (notices, edits and the bot's own events excluded); a sent dashboard
  post for the question; a sent reply row posted by someone other than the bot; the question's
  ``answered_at`` when ``answered_by`` is a person.
* **Suggestion acceptance**, over questions that got a suggestion (a stored suggestion with at
  least one source); the first rule that applies decides:

  1. a 👎 (a maintainer's dashboard vote, or a reaction on the bot's confident reply in the
     room) → rejected;
  2. a 👍 (same two places) → accepted;
  3. a maintainer posted from the dashboard: accepted when some sent post is the suggestion
     nearly unchanged (``difflib`` ratio ≥ 0.9 after collapsing whitespace), else rejected;
  4. the bot's confident reply was sent (and, by rule 1, not 👎'd) → accepted;
  5. dismissed → rejected;
  6. otherwise undecided, left out of the rate.

  rate = accepted / (accepted + rejected).
* **Doc gaps**: questions in the window whose confidence is below ``reply_threshold`` (or
  missing), not dismissed, grouped by meaning: in the order asked, each joins the first group whose
  seed (first question) has cosine ≥ 0.6 with it, else seeds a new group. Each group is shown by
  its most central question (highest mean cosine to the others). Without an encoder, questions
  group by identical normalised text.
"""
