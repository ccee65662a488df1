"""``supportbot ask``: print the reply the bot would suggest to one question."""

from __future__ import annotations

import argparse
import json

from bot.cli.loaders import load_retriever, settings_from_args


def cmd_ask(args: argparse.Namespace) -> int:
    """Print the reply (as read, as Markdown, or as JSON) the bot would suggest."""
    from bot.answering.reply import compose_reply

    settings = settings_from_args(args)
    retriever = load_retriever(settings)
    result = retriever.search(args.question, mode=args.mode, k=10)
    reply = compose_reply(
        result,
        threshold=settings.reply_threshold,
        max_sources=settings.max_sources,
        index_version=retriever.index.version,
        chunks=retriever.index.chunk_texts,
    )
    if args.json:
        print(json.dumps(reply.to_json(), indent=2, ensure_ascii=False))
    else:
        from bot.answering.render import markdown_to_text

        print(reply.markdown if args.markdown else markdown_to_text(reply.markdown))
        if not reply.would_reply:
            print(
                f"\n(below the reply threshold {settings.reply_threshold:.0%}: in the room a "
                "mention gets this reply, marked as unsure, and the question goes to the "
                "maintainers' queue; an unmentioned question only goes to the queue)"
            )
    return 0
