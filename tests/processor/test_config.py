import pytest

from common.errors import ConfigError
from processor.config import FieldSpec, Settings, parse_fields

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "KAFKA_TOPIC": "vehicles"}


def test_settings_defaults_project_speed_and_car_id_keyed_by_car_id():
    s = Settings.from_env(BASE)
    assert s.kafka.topic == "vehicles"
    assert s.kafka.dlq_topic == "vehicles.dlq"
    assert [f.output for f in s.projection.fields] == ["speed", "carID"]
    assert s.projection.key_field == "carID"
    assert s.kafka.producer_config()["enable.idempotence"] is True


def test_settings_lesson_aliases_are_accepted():
    s = Settings.from_env({"BOOTSTRAP_SERVERS": "k:9092", "TOPIC_NAME": "t"})
    assert (s.kafka.bootstrap_servers, s.kafka.topic) == ("k:9092", "t")


def test_parse_fields_types_optional_renames_and_tags():
    fields = parse_fields("speed:number,carID:str=car,zone?,__tag__:__path__:str?=path,__time__:int")
    assert fields == (
        FieldSpec("speed", "number", True, "speed"),
        FieldSpec("carID", "str", True, "car"),
        FieldSpec("zone", "any", False, "zone"),
        FieldSpec("__tag__:__path__", "str", False, "path"),
        FieldSpec("__time__", "int", True, "__time__"),
    )


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"KAFKA_TOPIC": "t"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k"}, "KAFKA_TOPIC"),
        ({**BASE, "SLS_PULL_COUNT": "0"}, "SLS_PULL_COUNT=0"),
        ({**BASE, "SLS_PULL_COUNT": "many"}, "SLS_PULL_COUNT='many'"),
        ({**BASE, "SLS_COMPRESSION": "gzip"}, "SLS_COMPRESSION='gzip'"),
        ({**BASE, "LOG_FORMAT": "xml"}, "LOG_FORMAT='xml'"),
        ({**BASE, "PROJECTION_FIELDS": "speed:decimal"}, "unknown type 'decimal'"),
        ({**BASE, "PROJECTION_FIELDS": ""}, "PROJECTION_FIELDS is empty"),
        ({**BASE, "PROJECTION_FIELDS": "a,b=a"}, "output name(s) a"),
        ({**BASE, "PROJECTION_FIELDS": "__nope__"}, "not SLS metadata"),
        ({**BASE, "KAFKA_KEY_FIELD": "vin"}, "KAFKA_KEY_FIELD='vin'"),
        ({**BASE, "KAFKA_PRODUCER_CONFIG": "{linger"}, "KAFKA_PRODUCER_CONFIG is not valid JSON"),
        ({**BASE, "KAFKA_PRODUCER_CONFIG": "[1]"}, "must be a JSON object"),
        ({**BASE, "KAFKA_PRODUCER_CONFIG": '{"enable.idempotence": false}'}, "'enable.idempotence'"),
        ({**BASE, "DELIVERY_MODE": "twice"}, "DELIVERY_MODE='twice'"),
        ({**BASE, "CHECKPOINT_STORE": "kafka"}, "needs DELIVERY_MODE=exactly-once"),
        ({**BASE, "SLS_INVALID_CURSOR_POLICY": "skip"}, "SLS_INVALID_CURSOR_POLICY='skip'"),
        ({**BASE, "INVOCATION_TIMEOUT_SECONDS": "-1"}, "INVOCATION_TIMEOUT_SECONDS=-1"),
    ],
)
def test_settings_bad_configuration_names_the_variable(env, needle):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert needle in str(info.value)


def test_settings_sasl_variables_reach_librdkafka_but_not_repr():
    s = Settings.from_env({**BASE, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
                           "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "hunter2-secret"})
    conf = s.kafka.producer_config()
    assert conf["sasl.password"] == "hunter2-secret"
    assert conf["security.protocol"] == "SASL_SSL"
    assert "hunter2-secret" not in repr(s)


def test_with_parameter_overrides_topic_and_fields_and_rejects_unknown_keys():
    s = Settings.from_env(BASE).with_parameter({"topic": "other", "fields": "speed:int,carID:int"})
    assert s.kafka.topic == "other"
    assert s.kafka.dlq_topic == "other.dlq"
    assert s.projection.fields[0].type == "int"
    with pytest.raises(ConfigError, match="unknown key"):
        Settings.from_env(BASE).with_parameter({"kafkaTopicz": "x"})
    with pytest.raises(ConfigError, match=r"parameter\.topic"):
        Settings.from_env(BASE).with_parameter({"topic": 3})
