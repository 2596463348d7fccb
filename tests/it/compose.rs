//! `docker-compose.yml` as far as a machine without a Docker engine can check it: it parses as
//! the Compose specification, and its services fit together and fit the binary.

use std::collections::{BTreeSet, HashMap};

use compose_spec::{
    Compose, ListOrMap, Service, ShortOrLong,
    service::{Condition, Restart},
};

/// The file as YAML, with its `<<: *anchor` merge keys applied as Compose applies them,
/// nested ones included (an anchor that merges another).
fn yaml() -> serde_yaml::Value {
    let text = include_str!("../../docker-compose.yml");
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(text).expect("docker-compose.yml");
    while serde_yaml::to_string(&yaml).is_ok_and(|text| text.contains("<<:")) {
        yaml.apply_merge()
            .expect("docker-compose.yml's merge keys apply");
    }
    yaml
}

/// The file, parsed and validated as the Compose specification (typed: every field it sets
/// must exist in the specification and hold a valid value).
fn compose() -> Compose {
    let compose: Compose = serde_yaml::from_value(yaml()).expect("docker-compose.yml");
    if let Err(error) = compose.validate_all() {
        panic!("docker-compose.yml: {error}");
    }
    compose
}

/// The services the README's Docker Compose section names (in backticks).
fn services_the_readme_names() -> BTreeSet<String> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Running with Docker Compose")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_default();
    section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| !matches!(*word, "serve" | "docker-compose.yml"))
        .map(str::to_owned)
        .collect()
}

fn environment(service: &Service) -> Vec<String> {
    match &service.environment {
        ListOrMap::Map(map) => map.keys().map(|k| k.to_string()).collect(),
        ListOrMap::List(list) => list
            .iter()
            .map(|entry| entry.split('=').next().unwrap_or_default().to_owned())
            .collect(),
    }
}

#[test]
fn every_service_the_readme_names_exists() {
    let compose = compose();
    let named = services_the_readme_names();

    assert!(named.len() >= 6, "the README names {named:?}");
    for service in &named {
        assert!(
            compose.services.keys().any(|k| k.as_str() == service),
            "the README names {service}, docker-compose.yml has no such service"
        );
    }
}

#[test]
fn every_depends_on_condition_has_what_it_waits_for() {
    let compose = compose();

    for (name, service) in &compose.services {
        for (target, dependency) in service.depends_on.clone().into_long() {
            let target_service = compose
                .services
                .get(&target)
                .unwrap_or_else(|| panic!("{name} depends on {target}, which does not exist"));
            match dependency.condition {
                Condition::ServiceHealthy => assert!(
                    target_service.healthcheck.is_some(),
                    "{name} waits for {target} to be healthy, but {target} has no healthcheck"
                ),
                Condition::ServiceCompletedSuccessfully => assert!(
                    matches!(target_service.restart, Some(Restart::No)),
                    "{name} waits for {target} to complete, but {target} restarts"
                ),
                Condition::ServiceStarted => {}
            }
        }
    }
}

#[test]
fn no_two_services_publish_the_same_host_port() {
    let compose = compose();
    let mut published: HashMap<String, String> = HashMap::new();

    for (name, service) in &compose.services {
        for port in &service.ports {
            let host = match port {
                ShortOrLong::Short(short) => short.ranges.host().map(|h| h.to_string()),
                ShortOrLong::Long(long) => long.published.as_ref().map(|p| p.to_string()),
            };
            if let Some(host) = host {
                let previous = published.insert(host.clone(), name.to_string());
                assert!(
                    previous.is_none(),
                    "host port {host} is published by {name} and {}",
                    previous.unwrap_or_default()
                );
            }
        }
    }
}

#[test]
fn every_variable_given_to_the_binary_is_one_it_reads() {
    let compose = compose();
    let binary_services: Vec<_> = compose
        .services
        .iter()
        .filter(|(_, service)| service.build.is_some())
        .collect();

    assert!(
        binary_services.len() >= 3,
        "migrate, bff and worker run the binary"
    );
    for (name, service) in binary_services {
        let variables = environment(service);
        for variable in &variables {
            assert!(
                temporal_bff::config::VARIABLES.contains(&variable.as_str()),
                "{name} sets {variable}, which temporal-bff does not read"
            );
        }
        assert!(
            variables.iter().any(|v| v == "DATABASE_URL"),
            "{name} needs DATABASE_URL"
        );
    }
}

#[test]
fn every_service_of_the_binary_uses_one_of_the_two_named_images_built_from_its_target() {
    let compose = yaml();
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("the Dockerfile is readable");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("FROM "))
        .filter_map(|from| from.split(" AS ").nth(1))
        .collect();

    let services = compose["services"]
        .as_mapping()
        .expect("compose has services");
    // target -> the image names the services building it give it
    let mut images: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (name, service) in services {
        if service.get("build").is_none() {
            continue;
        }
        let runs_worker = service["command"]
            .as_sequence()
            .is_some_and(|c| c.first().and_then(|c| c.as_str()) == Some("worker"));
        let target = service["build"]["target"].as_str().unwrap_or_default();
        let expected = if runs_worker { "worker" } else { "server" };
        assert_eq!(target, expected, "{name:?} builds the {expected} image");
        let image = service["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name:?} names its image"));
        images
            .entry(target.to_owned())
            .or_default()
            .insert(image.to_owned());
    }
    assert!(
        images.values().all(|names| names.len() == 1),
        "one image name per target: {images:?}"
    );
    assert_ne!(images.get("server"), images.get("worker"), "{images:?}");
    assert!(stages.contains(&"worker"), "stages: {stages:?}");
    assert_eq!(
        stages.last(),
        Some(&"server"),
        "the default image is the server"
    );
    let builds: Vec<&str> = dockerfile
        .lines()
        .filter(|line| line.contains("cargo build"))
        .collect();
    assert!(
        builds.iter().all(|b| b.contains("--no-default-features")),
        "every image build leaves the default features out: {builds:?}"
    );
    assert!(
        builds.iter().any(|b| b.contains("--features worker")),
        "the worker's build adds only the worker: {builds:?}"
    );
}

#[test]
fn no_password_or_secret_has_a_value_in_the_file_only_a_required_variable() {
    let compose = yaml();

    let mut checked = 0;
    for (name, service) in compose["services"].as_mapping().expect("services") {
        let Some(environment) = service["environment"].as_mapping() else {
            continue;
        };
        for (variable, value) in environment {
            let variable = variable.as_str().unwrap_or_default();
            let value = value.as_str().unwrap_or_default();
            let secret = ["PASSWORD", "PWD", "SECRET"]
                .iter()
                .any(|word| variable.contains(word));
            if secret {
                checked += 1;
                assert!(
                    value.starts_with("${") && value.contains(":?"),
                    "{name:?} gives {variable} a value in the file: {value}"
                );
            }
            if variable == "DATABASE_URL" {
                checked += 1;
                assert!(
                    value.contains(":${POSTGRES_PASSWORD:?"),
                    "{name:?}'s DATABASE_URL holds a password: {value}"
                );
            }
        }
    }
    assert!(checked >= 6, "the secrets were found ({checked})");
    assert_eq!(
        compose["secrets"]["admin_password"]["environment"], "ADMIN_PASSWORD",
        "the first admin's password comes from the environment, through a secret"
    );
}
