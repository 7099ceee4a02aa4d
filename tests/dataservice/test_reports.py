"""The 2008 pilots' output report, a POOL XML file catalogue, goes through the adder exactly like
today's JSON one: the outputs are recorded, registered in DDM at the site and subscribed to the T1."""

from __future__ import annotations

import uuid

from tests.dataservice.conftest import files_of, job_row, report_final, running_jobs, site_rse, write_outputs


def pool_catalogue(entries: dict[str, dict]) -> str:
    files = "".join(
        f'<File ID="{e["guid"]}"><physical><pfn filetype="ROOT_All" name="{lfn}"/></physical>'
        f'<logical><lfn name="{lfn}"/></logical>'
        f'<metadata att_name="fsize" att_value="{e["fsize"]}"/>'
        f'<metadata att_name="adler32" att_value="{e["adler32"]}"/></File>'
        for lfn, e in entries.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'
        '<!-- Edited By POOL -->\n<!DOCTYPE POOLFILECATALOG SYSTEM "InMemory">\n'
        f"<POOLFILECATALOG>{files}</POOLFILECATALOG>"
    )


def test_a_pool_xml_report_is_registered_and_the_job_goes_transferring(grid):
    [pid] = running_jobs(grid, uuid.uuid4().hex[:8])
    rse = site_rse(job_row(grid.engine, pid))
    entries = write_outputs(grid, pid, rse)
    report_final(grid, pid, pool_catalogue(entries))

    assert grid.adder().transferring == 1
    assert job_row(grid.engine, pid)["jobStatus"] == "transferring"
    outs = [f for f in files_of(grid.engine, pid) if f["type"] != "input"]
    for f in outs:
        e = entries[f["lfn"]]
        assert (f["GUID"], f["fsize"], f["checksum"], f["status"]) == (
            e["guid"], e["fsize"], f"ad:{e['adler32']}", "transferring")  # fmt: skip
        listed = {i.lfn: i for i in grid.svc.ddm.list_files(f["destinationDBlock"])}
        assert listed[f["lfn"]].guid == e["guid"] and listed[f["lfn"]].checksum == f"ad:{e['adler32']}"
        assert grid.svc.ddm.list_replicas([e["guid"]])[e["guid"]] == {rse}
        assert grid.svc.ddm.subscription(f["destinationDBlock"], "CLOUDA_T1_DATADISK") is not None

    grid.agent()
    assert grid.finisher().finished == 1
    assert job_row(grid.engine, pid)["jobStatus"] == "finished"
