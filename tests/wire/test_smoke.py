from panda_server.protocol import wire
from tests.support.jobs import simple_job


def test_submit_and_get_job(live):
    user = live.session(live.pki.user_proxy)
    r = user.post(
        f"{live.https_url}/server/panda/submitJobs",
        data={"jobs": wire.dump_job_states([simple_job(label="user")])},
    )
    print(r.status_code, r.text)
    assert r.status_code == 200
