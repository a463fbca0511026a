"""The `leadscore` command."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import click
import orjson

from leadscore import __version__
from leadscore.config import Settings, describe_settings, load_settings, settings_reference
from leadscore.errors import LeadscoreError, RulesError
from leadscore.logs import logging_config, setup_logging


def _settings_epilog() -> str:
    lines = ["Settings (environment variables, with defaults):"]
    for env, default, help_text in describe_settings():
        lines.append(f"  {env}={default}  {help_text}")
    return "\b\n" + "\n".join(lines)


def _settings() -> Settings:
    try:
        return load_settings()
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(epilog=_settings_epilog(), context_settings={"max_content_width": 120})
@click.version_option(__version__, prog_name="leadscore")
def main() -> None:
    """leadscore: real-time lead scoring on Kafka.

    Engagement events in, explained scores and threshold actions out.
    """


@main.command()
def worker() -> None:
    """Run the scoring worker (a Faust worker) until SIGTERM or Ctrl-C."""
    from leadscore.codecs.avro import load_all
    from leadscore.kafka_admin import ensure_changelogs, require_topics
    from leadscore.scoring import load_rules
    from leadscore.stream.app import Worker, build_app, changelog_specs
    from leadscore.stream.state_dir import (
        begin_run,
        claim_state_dir,
        end_run,
        log_rules_change,
        note_rules,
    )

    settings = _settings()
    setup_logging(settings.log_level)
    try:
        _, api_warning = settings.api_access()
        rules = load_rules(settings.rules_file)
        load_all()
        cluster_id, partitions_by_topic = require_topics(settings)
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc
    partitions = partitions_by_topic[settings.events_topic]
    try:
        claim_state_dir(settings.data_dir, cluster_id, settings.app_id, settings.events_topic)
        begin_run(settings.data_dir)
    except (LeadscoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    digest = rules.digest()
    log_rules_change(note_rules(settings.data_dir, rules.version, digest), rules.version, digest)
    click.echo(
        f"leadscore worker: rules {rules.version}, {partitions} partitions of "
        f"{settings.events_topic}, guarantee {settings.processing_guarantee}",
        err=True,
    )
    if api_warning is not None and settings.web_enabled:
        logging.getLogger("leadscore.web").warning("%s", api_warning)
    app = build_app(settings, rules, partitions)
    try:
        ensure_changelogs(settings, changelog_specs(app), partitions)
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc
    runner = Worker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        stop_timeout=settings.stop_timeout_seconds,
    )
    # At log level warn or error Faust's terminal spinner sets the root logger to DEBUG
    # and spins on every record: each debug call in Faust and aiokafka (two per record
    # sent) then builds a LogRecord, about 11% of a worker's CPU in bench/profile_worker.py's
    # profile. Without the spinner the level given is the level used.
    runner.spinner = None
    try:
        runner.execute_from_commandline()
    except SystemExit as stopped:
        # Faust exits 0 only after a stop that committed and closed the tables.
        if stopped.code in (0, None) and runner.crash_reason is None:
            end_run(settings.data_dir)
        raise


@main.group()
def sink() -> None:
    """Action sinks: separate processes that act on leadscore.actions."""


def _sink_setup(
    given: Path | None, setting: str, load: Any, *topic_names: str
) -> tuple[Settings, Any, Path]:
    """Settings, the sink's loaded file (--config, else the setting) and its path."""
    from leadscore.kafka_admin import require_sink_topics

    settings = _settings()
    setup_logging(settings.log_level)
    path = given or getattr(settings, setting)
    if path is None:
        raise click.ClickException(f"give the file: --config or LEADSCORE_{setting.upper()}")
    try:
        config = load(path)
        require_sink_topics(settings, *(getattr(settings, name) for name in topic_names))
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc
    return settings, config, path


@sink.command("notify")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Endpoints file (default: LEADSCORE_NOTIFY_CONFIG).",
)
def sink_notify(config_path: Path | None) -> None:
    """Deliver actions to Slack and signed webhooks until SIGTERM or Ctrl-C."""
    import os

    from leadscore.sinks.notify_config import load_notify_config
    from leadscore.sinks.notify_sink import NotifySink
    from leadscore.sinks.runner import run_sink

    settings, config, path = _sink_setup(
        config_path,
        "notify_config",
        lambda p: load_notify_config(p, os.environ),
        "actions_topic",
        "sink_dlq_topic",
    )
    endpoints = len(config.endpoints)
    click.echo(f"leadscore sink notify: {endpoints} endpoint(s), from {path}", err=True)
    sys.exit(run_sink(settings, NotifySink(settings, config)))


@sink.command("routing")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Teams and rules file (default: LEADSCORE_ROUTING_CONFIG).",
)
def sink_routing(config_path: Path | None) -> None:
    """Assign owners to actions and write them to the assignments topic, until SIGTERM."""
    from leadscore.sinks.routing_rules import load_routing_config
    from leadscore.sinks.routing_sink import RoutingSink
    from leadscore.sinks.runner import run_sink

    settings, config, path = _sink_setup(
        config_path,
        "routing_config",
        load_routing_config,
        "actions_topic",
        "assignments_topic",
        "sink_dlq_topic",
    )
    click.echo(f"leadscore sink routing: {len(config.teams)} team(s), from {path}", err=True)
    sys.exit(run_sink(settings, RoutingSink(settings, config)))


@main.group()
def topics() -> None:
    """Manage leadscore's topics."""


@topics.command("create")
def topics_create() -> None:
    """Create leadscore's topics (partitions, replication, compaction as configured)."""
    from leadscore.kafka_admin import create_topics

    settings = _settings()
    try:
        outcome = create_topics(settings)
    except LeadscoreError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, state in sorted(outcome.items()):
        click.echo(f"{state:8} {name}")


@main.command()
@click.argument("source", type=click.File("rb"), default="-")
@click.option(
    "--format",
    "wire_format",
    type=click.Choice(["json", "avro"]),
    default="json",
    show_default=True,
    help="Encoding written to the events topic.",
)
def produce(source: Any, wire_format: Literal["json", "avro"]) -> None:
    """Produce JSON-lines events from SOURCE (a file, or - for stdin), keyed by contact_id."""
    from leadscore.producing import EventProducer

    producer = EventProducer(_settings(), wire_format)
    sent = 0
    bad = 0
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
            if not isinstance(event, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            click.echo(f"line {number}: skipped, {exc}", err=True)
            bad += 1
            continue
        producer.send(event)
        sent += 1
    left = producer.flush()
    if left or producer.failed:
        raise click.ClickException(f"{left + producer.failed} of {sent} events were not delivered")
    if bad:
        raise click.ClickException(
            f"produced {sent} events; skipped {bad} lines that are not JSON objects"
        )
    click.echo(f"produced {sent} events to {producer.topic}", err=True)


@main.command()
@click.argument("contact_id")
@click.option("--request-id", help="Id of the request (default: a new UUID); it names the receipt.")
def erase(contact_id: str, request_id: str | None) -> None:
    """Ask the workers to erase CONTACT_ID everywhere (docs/privacy.md); prints the request id.

    The request goes to the privacy topic; its receipt appears on the receipts topic,
    keyed by the request id, once a worker has carried it out.
    """
    import time
    import uuid

    from confluent_kafka import Producer

    from leadscore.scoring.events import id_problem
    from leadscore.step.privacy import EraseRequest

    problem = id_problem(contact_id)
    if problem:
        raise click.ClickException(f"CONTACT_ID {problem}")
    settings = _settings()
    request = EraseRequest(request_id or str(uuid.uuid4()), contact_id, int(time.time() * 1000))
    failed: list[str] = []
    producer = Producer(
        {
            **settings.confluent_config(),
            "enable.idempotence": True,
            "partitioner": "murmur2_random",  # the contact's partition, as its events'
        }
    )
    producer.produce(
        settings.privacy_topic,
        key=contact_id.encode("utf-8"),
        value=request.to_bytes(),
        on_delivery=lambda err, _msg: failed.append(str(err)) if err else None,
    )
    if producer.flush(30) or failed:
        raise click.ClickException(f"the request was not delivered: {failed[:1] or 'timed out'}")
    click.echo(request.request_id)
    click.echo(
        f"erase request sent to {settings.privacy_topic}; its receipt will be on "
        f"{settings.privacy_receipts_topic} under that id",
        err=True,
    )


@main.command()
@click.option("--contacts", default=1000, show_default=True, help="Contacts in the population.")
@click.option("--rate", default=100.0, show_default=True, help="Events per second.")
@click.option(
    "--duration", default=60.0, show_default=True, help="Seconds to run (0: until Ctrl-C)."
)
@click.option("--seed", default=7, show_default=True, help="Random seed: same seed, same traffic.")
@click.option("--prefix", default="contact-", show_default=True, help="Contact id prefix.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(
    contacts: int, rate: float, duration: float, seed: int, prefix: str, quiet: bool
) -> None:
    """Produce synthetic engagement traffic at a steady rate, with progress."""
    from leadscore.producing import EventProducer
    from leadscore.simulate import TrafficModel

    if rate <= 0:
        raise click.BadParameter("must be positive", param_hint="--rate")
    producer = EventProducer(_settings())
    model = TrafficModel(contacts, seed=seed, prefix=prefix)
    total = int(rate * duration) if duration > 0 else None
    started = time.monotonic()
    sent = 0
    # A flag, not KeyboardInterrupt: in one CI run a simulator ran on after SIGINT,
    # and an interrupt raised inside the Kafka client's callbacks may not reach here.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with click.progressbar(
        length=total or 0,
        label="simulating",
        file=sys.stderr,
        hidden=quiet or total is None,
        show_pos=True,
    ) as bar:
        while not stop.is_set() and (total is None or sent < total):
            pause = started + sent / rate - time.monotonic()
            if pause > 0 and stop.wait(pause):
                break
            producer.send(model.next_event(time.time_ns() // 1_000_000))
            sent += 1
            bar.update(1)
    left = producer.flush()
    elapsed = time.monotonic() - started
    click.echo(
        f"simulated {sent} events for {contacts} contacts in {elapsed:.1f} s "
        f"({sent / max(elapsed, 1e-9):.0f}/s); undelivered {left + producer.failed}",
        err=True,
    )


TAILS = {
    "actions": "actions_topic",
    "lead-state": "lead_state_topic",
    "score-changes": "score_changes_topic",
    "dlq": "dlq_topic",
    "events": "events_topic",
    "assignments": "assignments_topic",
    "sink-dlq": "sink_dlq_topic",
    "privacy-receipts": "privacy_receipts_topic",
    "account-state": "account_state_topic",
    "account-actions": "account_actions_topic",
}


@main.command()
@click.argument("what", type=click.Choice(sorted(TAILS)))
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record.")
@click.option("--max", "limit", type=int, default=0, help="Stop after this many records.")
@click.option("--raw", is_flag=True, help="Print each record as JSON instead of a summary line.")
def tail(what: str, from_beginning: bool, limit: int, raw: bool) -> None:
    """Print records of one of leadscore's topics as they arrive (Ctrl-C stops).

    Contact ids are printed as they are in the topic: this is a data viewer.
    """
    from confluent_kafka import Consumer

    from leadscore.codecs.read_back import decode_output, describe, describe_dead_letter
    from leadscore.scoring.events import visible

    settings = _settings()
    topic = getattr(settings, TAILS[what])
    consumer = Consumer(
        {
            **settings.confluent_config(),
            "group.id": f"leadscore-tail-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    consumer.subscribe([topic])
    seen = 0
    try:
        while not limit or seen < limit:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            seen += 1
            if what in ("dlq", "sink-dlq"):
                headers = msg.headers() or []
                items = headers.items() if isinstance(headers, dict) else headers
                click.echo(visible(describe_dead_letter(items)))
                continue
            record = decode_output(msg.value())
            if record is None:  # a tombstone: a merged or erased lead, on compacted topics
                key = (msg.key() or b"").decode(errors="replace")
                click.echo(visible(f"{key:<18} (tombstone)"))
                continue
            click.echo(visible(orjson.dumps(record).decode() if raw else describe(what, record)))
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


@main.command("verify")
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Rules whose threshold levels actions are checked against "
    "(default: LEADSCORE_RULES_FILE, else the packaged rules).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def verify_command(rules_path: Path | None, as_json: bool) -> None:
    """Check lead-state, score-changes and actions against scoring's invariants.

    Reads the three topics from their start to their current end (committed
    records only) and checks, per lead: the audit chains (new = old - decay +
    delta), the published score and event count equal the audit's, no event
    id is counted twice, every threshold action matches a crossing in the
    audit, and no action id is missing from its sequence. Exits 1 on any
    violation. Use it after an incident, with the workers running or not.
    """
    from leadscore.verify import verify_deployment

    settings = _settings()
    setup_logging(settings.log_level)
    rules = _load_rules_or_exit(rules_path or settings.rules_file)
    started = time.monotonic()

    def progress(topic: str, records: int) -> None:
        click.echo(f"\r{topic}: {records:,} records read", err=True, nl=False)

    report = verify_deployment(settings, rules, progress)
    click.echo(f"\rread in {time.monotonic() - started:.1f} s" + " " * 30, err=True)
    if as_json:
        click.echo(orjson.dumps(report.summary(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(report.render())
    if not report.ok:
        raise SystemExit(1)


@main.group()
def rules() -> None:
    """Work with rules files."""


@rules.command("check")
@click.argument("path", type=click.Path(path_type=Path))
def rules_check(path: Path) -> None:
    """Validate a rules file; problems are listed with their line numbers."""
    loaded = _load_rules_or_exit(path)
    click.echo(
        f"{path}: ok (version {loaded.version}, {len(loaded.rules)} rules, "
        f"{len(loaded.stages)} stages, {len(loaded.thresholds)} thresholds)"
    )


@rules.command("explain")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--events",
    "events_file",
    type=click.File("rb"),
    required=True,
    help="JSON-lines file of events (one EngagementEvent per line); - for stdin.",
)
@click.option(
    "--until",
    help="Follow decay up to this time (ISO-8601 with offset, or epoch ms). "
    "Default: the last event's time.",
)
@click.option("--contact", "contacts", multiple=True, help="Only these contacts (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (one per step) for tools.")
def rules_explain(
    path: Path, events_file: Any, until: str | None, contacts: tuple[str, ...], as_json: bool
) -> None:
    """Score an event file with a rules file, offline, and print each contact's timeline.

    Shows every score change with the rules behind it (and cap clipping), fit
    changes, the actions that would fire, and decay-driven stage changes, so a
    rule change can be tried before rollout. No Kafka needed.
    """
    from leadscore.explain import BadLine, explain, read_events, render, to_json

    loaded = _load_rules_or_exit(path)
    until_ms = _parse_time(until) if until else None
    good = []
    bad = 0
    for item in read_events(events_file):
        if isinstance(item, BadLine):
            bad += 1
            click.echo(f"{events_file.name}:{item.line}: skipped: {item.message}", err=True)
        elif not contacts or item.contact_id in contacts:
            good.append(item)
    timelines = explain(good, loaded, until_ms)
    if as_json:
        for line in to_json(timelines):
            click.echo(line.decode())
    else:
        render(timelines, loaded, click.get_text_stream("stdout"))
    if bad:
        click.echo(f"{bad} line(s) skipped as invalid", err=True)


@rules.command("compare")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
def rules_compare(old: Path, new: Path) -> None:
    """Say what kind of change NEW is from OLD: only points (every lead can be re-weighted
    exactly at the switch), none, or more (it applies to new events only), and why."""
    from leadscore.scoring.reweight import classify

    change = classify(_load_rules_or_exit(old), _load_rules_or_exit(new))
    click.echo(f"{old} -> {new}: {change.kind}")
    for rule_id, (was, now) in sorted(change.points.items()):
        click.echo(f"  rule {rule_id}: {was:g} -> {now:g} points")
    for rule_id, (was, now) in sorted(change.fit_points.items()):
        click.echo(f"  fit rule {rule_id}: {was:g} -> {now:g} points")
    for reason in change.why:
        click.echo(f"  forward only: {reason}")


@main.command("backtest")
@click.option(
    "--rules",
    "rules_files",
    type=click.Path(path_type=Path),
    multiple=True,
    required=True,
    help="A rules file (repeat to compare two or more).",
)
@click.option(
    "--events",
    "events_file",
    type=click.File("rb"),
    required=True,
    help="JSON-lines archive of events, in the order the worker read them.",
)
@click.option(
    "--outcomes",
    "outcomes_file",
    type=click.File("rb"),
    help="JSON-lines outcome events keyed by contact (default: those in --events).",
)
@click.option(
    "--outcome-type",
    default="opportunity_created",
    show_default=True,
    help="The event type that is an outcome.",
)
@click.option("--threshold", help="The threshold counted per week (default: the first).")
@click.option("--capacity", type=int, help="Sales capacity: leads a week the team can take.")
@click.option(
    "--until", help="Follow decay up to this time (ISO-8601 or epoch ms; default: last event)."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("backtest"),
    show_default=True,
    help="Where report.md and report.png go.",
)
@click.option("--workers", type=int, default=0, help="Processes (default: every core).")
@click.option(
    "--max-swing",
    type=float,
    help="Exit 2 when the last rules file's mean crossings per week differ from the "
    "first's by more than this fraction (0.2: 20%); for CI jobs on rule changes.",
)
def backtest(
    rules_files: tuple[Path, ...],
    events_file: Any,
    outcomes_file: Any,
    outcome_type: str,
    threshold: str | None,
    capacity: int | None,
    until: str | None,
    out_dir: Path,
    workers: int,
    max_swing: float | None,
) -> None:
    """Score an archive of events with one or more rules files, offline, on all cores.

    Reports threshold crossings per week (against --capacity), lift by peak-score
    decile and precision and recall of each threshold against outcome events, and
    the error bound of an archive that starts after a lead's first event, as
    Markdown and a PNG. No Kafka needed.
    """
    import os

    from leadscore.backtest import evaluate, plot, render, replay_all, shards_of, swing, to_json
    from leadscore.explain import BadLine, read_events

    loaded = [(str(path), _load_rules_or_exit(path)) for path in rules_files]
    cores = workers or os.cpu_count() or 1
    lines = events_file.read().splitlines()
    # Outcomes: validated here (few); the events are parsed and scored in the workers.
    marker = outcome_type.encode()
    source = (
        read_events(outcomes_file)
        if outcomes_file is not None
        else read_events(line for line in lines if marker in line)
    )
    outcomes: dict[str, int] = {}
    for item in source:
        if not isinstance(item, BadLine) and item.type == outcome_type:
            first = min(outcomes.get(item.contact_id, item.occurred_at), item.occurred_at)
            outcomes[item.contact_id] = first
    if outcomes_file is None:  # outcome events in the archive are not scored
        lines = [line for line in lines if marker not in line or not _of_type(line, outcome_type)]
    shards, unkeyed = shards_of(lines, cores * 4)
    until_ms = _parse_time(until) if until else None
    click.echo(
        f"{len(lines):,} lines, {len(outcomes):,} contacts with an outcome, {cores} process(es)",
        err=True,
    )
    evaluations = []
    for name, rules_set in loaded:
        with click.progressbar(length=1, label=f"{Path(name).name:<20}", file=sys.stderr) as bar:

            def advance(done: int, total: int, bar: Any = bar) -> None:
                bar.length = total
                bar.update(done - bar.pos)

            started = time.perf_counter()
            leads, bad = replay_all(shards, rules_set, until_ms, cores, advance)
            seconds = time.perf_counter() - started
        scored = len(lines) - unkeyed - bad
        click.echo(
            f"{name}: {len(leads):,} contacts, {scored:,} events in {seconds:.1f} s "
            f"({scored / max(seconds, 1e-9):,.0f} events/s)"
            + (f"; {unkeyed + bad} line(s) skipped as invalid" if unkeyed + bad else ""),
            err=True,
        )
        evaluations.append((name, evaluate(leads, outcomes, rules_set)))
    out_dir.mkdir(parents=True, exist_ok=True)
    report = render(evaluations, threshold, capacity)
    (out_dir / "report.md").write_text(report, encoding="utf-8")
    (out_dir / "report.json").write_bytes(orjson.dumps(to_json(evaluations)))
    plot(evaluations, threshold, capacity, str(out_dir / "report.png"))
    click.echo(report)
    click.echo(f"written: {out_dir}/report.md, report.json, report.png", err=True)
    if max_swing is not None and len(evaluations) > 1:
        chosen, before, after, change = swing(evaluations, threshold)
        verdict = f"{chosen} per week: {before:.1f} -> {after:.1f} ({change:+.1%})"
        if abs(change) > max_swing:
            click.echo(f"{verdict}: more than the allowed {max_swing:.0%}", err=True)
            raise SystemExit(2)
        click.echo(f"{verdict}: within {max_swing:.0%}", err=True)


def _of_type(line: bytes, kind: str) -> bool:
    try:
        return bool(orjson.loads(line).get("type") == kind)
    except (orjson.JSONDecodeError, AttributeError):
        return False


def _load_rules_or_exit(path: Path | None) -> Any:
    """The rules in ``path``; on problems, each is printed (file:line: message) and exit 1."""
    from leadscore.scoring import load_rules

    try:
        return load_rules(path)
    except RulesError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise SystemExit(1) from exc


def _parse_time(text: str) -> int:
    from leadscore.scoring.events import iso_to_ms

    if text.isdigit():
        return int(text)
    try:
        return iso_to_ms(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="--until") from exc


@main.command("settings")
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the settings reference (docs/configuration.md) instead of the values in effect.",
)
def show_settings(markdown: bool) -> None:
    """Print every setting with its environment variable and current value."""
    if markdown:
        click.echo(settings_reference(), nl=False)
        return
    current = _settings()
    for env, default, help_text in describe_settings():
        name = env.removeprefix("LEADSCORE_").lower()
        value = getattr(current, name)
        shown = "********" if value is not None and "password" in name else value
        click.echo(f"{env}={'' if shown is None else shown}")
        click.echo(f"    {help_text} (default: {default or 'none'})")


if __name__ == "__main__":
    main()
