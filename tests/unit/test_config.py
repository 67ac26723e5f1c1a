import pytest

from bitworks.config import ConfigError, load_settings

BASE = {"DATABASE_URL": "postgresql://u@h/db", "JWT_SECRET": "s" * 32}


def test_valid_settings_load():
    settings = load_settings(BASE)
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.jwt_secret.get_secret_value() == "s" * 32


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"JWT_SECRET": "s" * 32}, "DATABASE_URL"),
        ({**BASE, "DATABASE_URL": "sqlite:///x.db"}, "DATABASE_URL"),
        ({**BASE, "JWT_SECRET": "short"}, "JWT_SECRET"),
        ({"DATABASE_URL": "postgresql://u@h/db"}, "JWT_SECRET"),
        ({**BASE, "DB_POOL_SIZE": "many"}, "DB_POOL_SIZE"),
        ({**BASE, "PASSWORD_SCRYPT_N": "1000"}, "PASSWORD_SCRYPT_N"),
        ({**BASE, "STAGE": "prod", "PASSWORD_SCRYPT_N": "1024"}, "PASSWORD_SCRYPT_N"),
    ],
)
def test_bad_setting_names_the_variable_in_one_line(env, variable):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert variable in message
    assert "\n" not in message
    assert message.startswith("configuration error: ")
