"""GET /api/v1/instances/: filters, order, pages of at most 25 with next_token/after_token, label_counts."""

from __future__ import annotations

import json

from vast_emulator.testing import running_emulator


def test_pagination_filters_order_and_label_counts(tmp_path):
    # A long loading delay keeps the 30 instances as records only: no namespaces, so this stays cheap.
    with running_emulator(tmp_path / "state", loading_delay=3600) as emu:
        all_offers = emu.api("POST", "/api/v0/bundles/", json={"limit": 100}).json()["offers"]
        assert len(all_offers) >= 30
        ids = []
        for n, offer in enumerate(all_offers[:30]):
            label = "even" if n % 2 == 0 else "odd"
            body = {"image": "vastai/pytorch", "disk": 10.0, "label": label}
            ids.append(emu.api("PUT", f"/api/v0/asks/{offer['id']}/", json=body).json()["new_contract"])

        def page(**query):
            params = {k: json.dumps(v) if not isinstance(v, (str, int)) else v for k, v in query.items()}
            response = emu.api("GET", "/api/v1/instances/", params=params)
            assert response.status_code == 200, response.text
            return response.json()

        first = page(select_filters={}, order_by=[{"col": "id", "dir": "asc"}], limit=25)
        assert len(first["instances"]) == 25 and first["total_instances"] == 30
        assert first["label_counts"] == {"": 0, "even": 15, "odd": 15}
        second = page(select_filters={}, order_by=[{"col": "id", "dir": "asc"}], limit=25, after_token=first["next_token"])
        assert second["next_token"] is None
        assert [r["id"] for r in first["instances"] + second["instances"]] == sorted(ids)
        assert page(limit=100)["instances_found"] == 25  # capped at 25

        odd_desc = page(select_filters={"label": {"in": ["odd"]}}, order_by=[{"col": "id", "dir": "desc"}])
        assert [r["id"] for r in odd_desc["instances"]] == sorted(ids[1::2], reverse=True)
        loading = page(select_filters={"actual_status": {"in": ["loading"]}, "id": {"gte": ids[-5]}})
        assert [r["id"] for r in loading["instances"]] == ids[-5:]
        cols = page(select_cols=["id", "label", "nonexistent"], limit=1)["instances"][0]
        assert set(cols) == {"id", "label", "nonexistent"} and cols["nonexistent"] is None

        bad = emu.api("GET", "/api/v1/instances/", params={"after_token": "garbage!"})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_args"
        for instance_id in ids:
            emu.destroy(instance_id)
        assert page()["instances"] == []
