"""The cost model make bench prints (bench/costs.py, decision 0053): the arithmetic from counted calls to dollars."""

from __future__ import annotations

import pytest
from bench import costs

SEND_TO_TEN = {
    "dynamodb.GetItem": 1,
    "dynamodb.PutItem": 1,
    "dynamodb.Query": 2,
    "dynamodb.UpdateItem": 3,
    "apigatewaymanagementapi.PostToConnection": 10,
}


def test_a_send_costs_its_messages_its_invocation_and_its_request_units() -> None:
    price = {name: float(entry["usd"]) for name, entry in costs.PRICES.items()}
    # The frame in, the reply out, ten posts; 4 writes, 3 reads; 100 ms at 512 MB on arm64.
    expected = (
        12 * price["websocket_message"]
        + price["lambda_request"]
        + 0.1 * 0.5 * price["lambda_gb_second_arm64"]
        + 4 * price["dynamodb_write_request_unit"]
        + 3 * price["dynamodb_read_request_unit"]
    )
    assert costs.send_usd(SEND_TO_TEN, 0.1) == pytest.approx(expected)


def test_every_price_names_its_source_and_the_figures_follow_from_the_counts() -> None:
    assert all(entry["source"].startswith("https://") and entry["unit"] for entry in costs.PRICES.values())
    results = {
        "calls": {
            "message:send@10": SEND_TO_TEN,
            "connect": {"dynamodb.PutItem": 1, "dynamodb.BatchWriteItem": 1},
            "disconnect": {"dynamodb.UpdateItem": 2},
        },
        "latency": {"reply_ms": 100.0},
    }
    model = costs.model(results)
    assert model["million_sends_to_rooms_of_10_usd"] == round(costs.send_usd(SEND_TO_TEN, 0.1) * 1e6, 2)
    # A Socket.IO connection answers a ping a minute through an invocation; a native one pings every 5 minutes.
    assert model["connection_hour_socketio_usd"] > model["connection_hour_native_usd"] > 0
    assert model["company_500_agents_month_socketio_usd"] > model["company_500_agents_month_native_usd"]


def test_recording_for_sessions_costs_two_writes_and_a_read_and_a_recovery_grows_with_what_it_replays() -> None:
    price = {name: float(entry["usd"]) for name, entry in costs.PRICES.items()}
    # The position's reservation and the entry's put (decision 0102), and a message's second read of its room.
    assert costs.recording_usd() == pytest.approx(
        2 * price["dynamodb_write_request_unit"] + price["dynamodb_read_request_unit"]
    )
    small, large = costs.recovery_usd(1, 3), costs.recovery_usd(101, 3)
    # 100 more events: 100 more posts and 25 more 4 KB read units of the journal.
    assert large - small == pytest.approx(100 * price["websocket_message"] + 25 * price["dynamodb_read_request_unit"])
    assert costs.recovery_usd(1, 4) - small == pytest.approx(2 * price["dynamodb_write_request_unit"])
