"""The Redis the tests use is a real redis-server with AOF on."""

import redis

from tests.infra.redis_server import RedisServer


def test_round_trip_through_real_redis(redis_client: redis.Redis) -> None:
    redis_client.hset("release:shop-api", mapping={"version": "v2.4.1", "weight": "5"})
    assert redis_client.hgetall("release:shop-api") == {"version": "v2.4.1", "weight": "5"}
    assert int(redis_client.info("server")["redis_version"].split(".")[0]) >= 7


def test_data_survives_a_restart_through_aof(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    assert redis_client.config_get("appendonly") == {"appendonly": "yes"}
    redis_client.set("survivor", "yes")
    redis_server.restart()
    assert redis_server.client().get("survivor") == "yes"
