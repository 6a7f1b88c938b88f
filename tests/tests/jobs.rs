//! Jobs and CronJobs end to end: real `skiff up`, a real registry, Wasm samples where a module is
//! enough and busybox where a shell is what a user would run, and the real kubectl: Indexed Jobs,
//! back-off to `backoffLimit`, `ttlSecondsAfterFinished`, a controller restart in the middle of a
//! Job, a CronJob every minute with `concurrencyPolicy: Forbid`, and
//! `kubectl create job --from=cronjob/…`.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use skiff_tests::{Cluster, Registry, eventually, row, table};

struct Env {
    cluster: Cluster,
    registry: Registry,
}

impl Env {
    fn start() -> Env {
        let (cluster, registry) = Cluster::start_with_registry();
        Env { cluster, registry }
    }

    /// Pushes Wasm sample `name` and returns its image reference.
    fn sample(&self, name: &str) -> String {
        self.registry.push_sample(name).expect("pushing a sample")
    }

    fn busybox(&self) -> String {
        self.registry
            .push_busybox("test/busybox:v1")
            .expect("pushing busybox")
    }

    fn job(&self, name: &str) -> Value {
        self.cluster.get_json(&["job", name])
    }

    /// The Job's pods, through the label Kubernetes puts on them.
    fn pods_of(&self, job: &str) -> Vec<Value> {
        let list =
            self.cluster
                .get_json(&["pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// `REASON MESSAGE` lines of the events about `name`.
    fn events_of(&self, name: &str) -> String {
        self.cluster.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ])
    }

    /// `kubectl wait --for=condition=CONDITION job/NAME`, as a user waits.
    fn wait_job(&self, name: &str, condition: &str) {
        let run = self.cluster.kubectl(&[
            "wait",
            &format!("--for=condition={condition}"),
            &format!("job/{name}"),
            "--timeout=120s",
        ]);
        assert!(
            run.success()
                && run
                    .stdout
                    .contains(&format!("job.batch/{name} condition met")),
            "{run}\njob: {}\nevents:\n{}\n{}",
            self.job(name),
            self.events_of(name),
            self.cluster.server_log_tail()
        );
    }
}

/// A batch/v1 Job running `container` with `spec` merged in.
fn job(name: &str, container: Value, spec: Value) -> String {
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    });
    if let (Some(into), Some(from)) = (job["spec"].as_object_mut(), spec.as_object()) {
        into.extend(from.clone());
    }
    job.to_string()
}

/// Asserts that `kind/name` is not rewritten over two seconds: its controller has settled
/// rather than writing its status again at each change it causes.
fn assert_settled(env: &Env, object: &str) {
    let version = || {
        env.cluster
            .kubectl_ok(&["get", object, "-o", "jsonpath={.metadata.resourceVersion}"])
    };
    let before = version();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(version(), before, "{object} keeps changing");
}

fn condition<'a>(job: &'a Value, type_: &str) -> Option<&'a Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

#[test]
fn an_indexed_job_runs_each_index_once_and_completes() {
    let env = Env::start();
    let hello = env.sample("hello");
    env.cluster.apply(&job(
        "squares",
        json!({"name": "work", "image": hello, "args": ["index=$(JOB_COMPLETION_INDEX)"]}),
        json!({"completions": 3, "parallelism": 2, "completionMode": "Indexed"}),
    ));
    env.wait_job("squares", "complete");

    let job = env.job("squares");
    assert_eq!(job["status"]["succeeded"], 3, "{job}");
    assert_eq!(job["status"]["completedIndexes"], "0-2", "{job}");
    assert_eq!(job["status"]["active"].as_i64().unwrap_or(0), 0, "{job}");
    assert!(job["status"]["completionTime"].is_string(), "{job}");
    for type_ in ["SuccessCriteriaMet", "Complete"] {
        let c = condition(&job, type_).unwrap_or_else(|| panic!("no {type_}: {job}"));
        assert_eq!(c["reason"], "CompletionsReached", "{c}");
        assert_eq!(
            c["message"], "Reached expected number of succeeded pods",
            "{c}"
        );
    }
    let printed = table(&env.cluster.kubectl_ok(&["get", "job", "squares"]));
    let cells = row(&printed, "squares");
    assert_eq!(&cells[1..3], ["Complete", "3/3"], "{printed:?}");

    let pods = env.pods_of("squares");
    assert_eq!(pods.len(), 3, "one pod per index: {pods:#?}");
    let mut seen = Vec::new();
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap_or_else(|| panic!("no index annotation: {pod}"));
        assert_eq!(
            pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            index
        );
        assert!(name.starts_with(&format!("squares-{index}-")), "{name}");
        assert_eq!(pod["spec"]["hostname"], format!("squares-{index}"));
        assert_eq!(pod["status"]["phase"], "Succeeded", "{pod}");
        // Counted: the tracking finalizer is gone.
        assert!(pod["metadata"]["finalizers"].is_null(), "{pod}");
        let logs = env.cluster.kubectl_ok(&["logs", name]);
        assert!(
            logs.contains(&format!("arg: index={index}")),
            "{name}: {logs}"
        );
        seen.push(index.to_string());
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);

    let events = env.events_of("squares");
    assert!(events.contains("Created pod: squares-0-"), "{events}");
    assert!(
        events.contains("Completed") && events.contains("Job completed"),
        "{events}"
    );
}

#[test]
fn a_failing_job_backs_off_until_its_backoff_limit() {
    let env = Env::start();
    let failing = env.sample("exit-code");
    env.cluster.apply(&job(
        "doomed",
        json!({"name": "work", "image": failing, "args": ["7"]}),
        json!({"backoffLimit": 1}),
    ));
    env.wait_job("doomed", "failed");

    let job = env.job("doomed");
    let failed = condition(&job, "Failed").unwrap_or_else(|| panic!("not Failed: {job}"));
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{failed}");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(condition(&job, "FailureTarget").is_some(), "{job}");
    assert!(condition(&job, "Complete").is_none(), "{job}");
    assert_eq!(job["status"]["failed"], 2, "{job}");
    assert!(job["status"]["completionTime"].is_null(), "{job}");
    let printed = table(&env.cluster.kubectl_ok(&["get", "job", "doomed"]));
    assert_eq!(&row(&printed, "doomed")[1..3], ["Failed", "0/1"]);

    // Two attempts, the second one after the 10 s back-off.
    let mut pods = env.pods_of("doomed");
    assert_eq!(pods.len(), 2, "{pods:#?}");
    pods.sort_by_key(|p| {
        p["metadata"]["creationTimestamp"]
            .as_str()
            .map(str::to_string)
    });
    let finished: Timestamp =
        pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no finish time: {}", pods[0]));
    let retried: Timestamp = pods[1]["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retried.as_second() - finished.as_second() >= 9,
        "retried at {retried}, the first failed at {finished}"
    );
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Failed", "{pod}");
        assert!(pod["metadata"]["finalizers"].is_null(), "{pod}");
    }
    let events = env.events_of("doomed");
    assert!(
        events.contains("BackoffLimitExceeded")
            && events.contains("Job has reached the specified backoff limit"),
        "{events}"
    );
    assert_eq!(
        events.matches("Created pod: doomed-").count(),
        2,
        "{events}"
    );
}

#[test]
fn a_pod_failure_policy_fails_the_job_at_the_first_matching_exit_code() {
    let env = Env::start();
    let failing = env.sample("exit-code");
    env.cluster.apply(&job(
        "strict",
        json!({"name": "work", "image": failing, "args": ["7"]}),
        json!({"backoffLimit": 6, "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "work", "operator": "In", "values": [7]}},
        ]}}),
    ));
    env.wait_job("strict", "failed");
    let job = env.job("strict");
    let pods = env.pods_of("strict");
    assert_eq!(pods.len(), 1, "no retry after FailJob: {pods:#?}");
    let pod = pods[0]["metadata"]["name"].as_str().unwrap();
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed["reason"], "PodFailurePolicy", "{failed}");
    assert_eq!(
        failed["message"],
        format!(
            "Container work for pod default/{pod} failed with exit code 7 matching FailJob rule at index 1"
        )
    );
    assert_eq!(job["status"]["failed"], 1, "{job}");
    let events = env.events_of("strict");
    assert!(events.contains("PodFailurePolicy"), "{events}");
}

#[test]
fn a_suspended_job_stops_its_pods_and_resumes_without_counting_failures() {
    let env = Env::start();
    let sleeper = env.sample("sleeper");
    env.cluster.apply(&job(
        "pausable",
        json!({"name": "work", "image": sleeper}),
        json!({"completions": 2, "parallelism": 2}),
    ));
    let active = |n: i64| {
        eventually(&format!("{n} active pods"), || {
            let job = env.job("pausable");
            let running = env
                .pods_of("pausable")
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .count() as i64;
            if job["status"]["active"].as_i64().unwrap_or(0) == n && running == n {
                Ok(job)
            } else {
                Err(format!("{running} running; {job}"))
            }
        })
    };
    active(2);
    let suspend = |on: bool| {
        let patch = json!({"spec": {"suspend": on}}).to_string();
        env.cluster
            .kubectl_ok(&["patch", "job", "pausable", "--type=merge", "-p", &patch]);
    };
    suspend(true);
    eventually("the suspended job's pods gone", || {
        let pods = env.pods_of("pausable");
        if pods.is_empty() {
            Ok(())
        } else {
            Err(format!("{pods:#?}"))
        }
    });
    let job = env.job("pausable");
    let suspended = condition(&job, "Suspended").unwrap_or_else(|| panic!("{job}"));
    assert_eq!(suspended["reason"], "JobSuspended");
    assert_eq!(job["status"]["failed"].as_i64().unwrap_or(0), 0, "{job}");
    let printed = table(&env.cluster.kubectl_ok(&["get", "job", "pausable"]));
    assert_eq!(row(&printed, "pausable")[1], "Suspended");
    assert_settled(&env, "job/pausable");

    suspend(false);
    let job = active(2);
    let resumed = job["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Suspended"))
        .unwrap_or_else(|| panic!("{job}"));
    assert_eq!(resumed["status"], "False", "{resumed}");
    assert_eq!(resumed["reason"], "JobResumed", "{resumed}");
    let events = env.events_of("pausable");
    for line in ["Job suspended", "Job resumed"] {
        assert!(events.contains(line), "{events}");
    }
    assert_eq!(
        events.matches("Deleted pod: pausable-").count(),
        2,
        "{events}"
    );
}

#[test]
fn a_job_past_its_active_deadline_fails_and_stops_its_pods() {
    let env = Env::start();
    let sleeper = env.sample("sleeper");
    env.cluster.apply(&job(
        "hasty",
        json!({"name": "work", "image": sleeper}),
        json!({"activeDeadlineSeconds": 3}),
    ));
    env.wait_job("hasty", "failed");
    let job = env.job("hasty");
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed["reason"], "DeadlineExceeded", "{failed}");
    assert_eq!(
        failed["message"],
        "Job was active longer than specified deadline"
    );
    // Failed only once its pod was gone; the pod it stopped counts as failed.
    assert!(
        env.pods_of("hasty")
            .iter()
            .all(|p| p["status"]["phase"] != "Running")
    );
    assert_eq!(job["status"]["failed"], 1, "{job}");
    assert_eq!(job["status"]["active"].as_i64().unwrap_or(0), 0, "{job}");
    let events = env.events_of("hasty");
    assert!(
        events.contains("DeadlineExceeded") && events.contains("Deleted pod: hasty-"),
        "{events}"
    );
}

#[test]
fn a_finished_job_is_deleted_after_its_ttl() {
    let env = Env::start();
    let hello = env.sample("hello");
    env.cluster.apply(&job(
        "brief",
        json!({"name": "work", "image": hello}),
        json!({"ttlSecondsAfterFinished": 3}),
    ));
    env.wait_job("brief", "complete");
    eventually("the job deleted after its TTL", || {
        let run = env.cluster.kubectl(&["get", "job", "brief"]);
        if !run.success() && run.stderr.contains("NotFound") {
            Ok(())
        } else {
            Err(run.to_string())
        }
    });
    // Deleted in the foreground: its pods went first.
    eventually("the job's pods deleted", || {
        let pods = env.pods_of("brief");
        if pods.is_empty() {
            Ok(())
        } else {
            Err(format!("{pods:#?}"))
        }
    });
}

#[test]
fn a_job_survives_a_control_plane_restart_without_duplicates() {
    let mut env = Env::start();
    let busybox = env.busybox();
    env.cluster.apply(&job(
        "steady",
        json!({"name": "work", "image": busybox, "command": ["sh", "-c", "sleep 4; echo done"]}),
        json!({"completions": 4, "parallelism": 2}),
    ));
    eventually("two pods running", || {
        let job = env.job("steady");
        match job["status"]["active"].as_i64() {
            Some(2) => Ok(()),
            _ => Err(job.to_string()),
        }
    });
    env.cluster.restart();
    env.wait_job("steady", "complete");

    let job = env.job("steady");
    assert_eq!(job["status"]["succeeded"], 4, "{job}");
    assert_eq!(job["status"]["failed"].as_i64().unwrap_or(0), 0, "{job}");
    let pods = env.pods_of("steady");
    assert_eq!(pods.len(), 4, "no pod was made twice: {pods:#?}");
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Succeeded", "{pod}");
    }
}

#[test]
fn a_job_is_created_from_a_cron_job_by_hand() {
    let env = Env::start();
    let hello = env.sample("hello");
    let cron_job = |name: &str, extra: Value| {
        let mut spec = json!({
            "schedule": "0 0 1 1 *",
            "jobTemplate": {
                "metadata": {"labels": {"team": "batch"}},
                "spec": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": hello, "args": ["from-cron"]}],
                }}},
            },
        });
        if let (Some(into), Some(from)) = (spec.as_object_mut(), extra.as_object()) {
            into.extend(from.clone());
        }
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": spec})
            .to_string()
    };
    env.cluster.apply(&cron_job("yearly", json!({})));
    let printed = table(&env.cluster.kubectl_ok(&["get", "cronjob", "yearly"]));
    assert_eq!(
        &row(&printed, "yearly")[1..6],
        ["0 0 1 1 *", "<none>", "False", "0", "<none>"]
    );

    assert_settled(&env, "cronjob/yearly");
    let out = env
        .cluster
        .kubectl_ok(&["create", "job", "by-hand", "--from=cronjob/yearly"]);
    assert!(out.contains("job.batch/by-hand created"), "{out}");
    env.wait_job("by-hand", "complete");
    let job = env.job("by-hand");
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(job["metadata"]["labels"]["team"], "batch");
    let pods = env.pods_of("by-hand");
    let logs = env
        .cluster
        .kubectl_ok(&["logs", pods[0]["metadata"]["name"].as_str().unwrap()]);
    assert!(logs.contains("arg: from-cron"), "{logs}");

    // A time zone the control plane does not know is reported, not guessed.
    env.cluster.apply(&cron_job(
        "martian",
        json!({"timeZone": "Mars/Olympus_Mons"}),
    ));
    eventually("an UnknownTimeZone event", || {
        let events = env.events_of("martian");
        if events.contains("UnknownTimeZone")
            && events.contains("invalid timeZone: \"Mars/Olympus_Mons\"")
        {
            Ok(())
        } else {
            Err(events)
        }
    });
}

/// The one test that waits for the wall clock: up to a minute for the first run, another for
/// the second time, which Forbid skips while the first Job still runs.
#[test]
fn a_cron_job_every_minute_with_forbid_runs_one_job_at_a_time() {
    let env = Env::start();
    let sleeper = env.sample("sleeper");
    let mut events = env
        .cluster
        .cmd(&[
            "get",
            "events",
            "-w",
            "--field-selector",
            "involvedObject.name=minutely",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ])
        .spawn();
    env.cluster.apply(
        &json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "minutely"},
            "spec": {
                "schedule": "* * * * *",
                "concurrencyPolicy": "Forbid",
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": sleeper}],
                }}}},
            },
        })
        .to_string(),
    );
    let created = events.expect_stdout("the first job created", |l| {
        l.starts_with("SuccessfulCreate") && l.contains("Created job minutely-")
    });
    let job_name = created.split_whitespace().last().unwrap().to_string();
    let job = env.job(&job_name);
    let minutes: i64 = job_name["minutely-".len()..].parse().unwrap();
    let scheduled: Timestamp =
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no scheduled timestamp: {job}"));
    assert_eq!(scheduled.as_second(), minutes * 60, "{job}");
    assert_eq!(job["metadata"]["ownerReferences"][0]["name"], "minutely");
    let cron_job = env.cluster.get_json(&["cronjob", "minutely"]);
    assert_eq!(
        cron_job["status"]["active"][0]["name"],
        job_name.as_str(),
        "{cron_job}"
    );
    assert!(
        cron_job["status"]["lastScheduleTime"].is_string(),
        "{cron_job}"
    );

    events.expect_stdout("the next run skipped", |l| {
        l.starts_with("JobAlreadyActive")
            && l.contains("Not starting job because prior execution is running and concurrency policy is Forbid")
    });
    let jobs = env.cluster.kubectl_ok(&["get", "jobs", "-o", "name"]);
    assert_eq!(
        jobs.trim(),
        format!("job.batch/{job_name}"),
        "one job at a time"
    );
    let printed = table(&env.cluster.kubectl_ok(&["get", "cronjob", "minutely"]));
    assert_eq!(row(&printed, "minutely")[4], "1", "ACTIVE: {printed:?}");
}
