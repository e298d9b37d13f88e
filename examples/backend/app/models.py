# The AI Dock backend's models, written to agree with sql/0001_initial_tables as README's table
# says ("model change that matches"): the tests of `migrate verify --models` and
# `migrate diff --to-models` (tests/it/models.rs) import it, undo one row of the table at a time,
# and expect each undone row reported.
from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import declarative_base

Base = declarative_base(metadata=MetaData())

UUID = postgresql.UUID(as_uuid=True)
JSONB = postgresql.JSONB


def key():
    return Column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))


def stamp():
    return Column(DateTime(timezone=True), nullable=False, server_default=func.now())


event.listen(
    Base.metadata,
    "before_create",
    DDL(
        "CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n    NEW.updated_at := now();\n    RETURN NEW;\nEND;\n$$"
    ),
)


def touched(model):
    table = model.__tablename__
    event.listen(
        model.__table__,
        "after_create",
        DDL(
            f"CREATE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
        ),
    )
    return model


@touched
class Role(Base):
    __tablename__ = "roles"
    id = key()
    name = Column(String(50), nullable=False, unique=True, index=True)
    description = Column(Text)
    permissions = Column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    created_at = stamp()
    updated_at = stamp()
    __table_args__ = (
        CheckConstraint("jsonb_typeof(permissions) = 'array'", name="ck_roles_permissions_array"),
    )


@touched
class Department(Base):
    __tablename__ = "departments"
    id = key()
    name = Column(String(100), nullable=False, unique=True, index=True)
    description = Column(Text)
    created_at = stamp()
    updated_at = stamp()


@touched
class LLMConfiguration(Base):
    __tablename__ = "llm_configurations"
    id = key()
    model_name = Column(String(100), nullable=False)
    provider = Column(String(50), nullable=False)
    api_key_encrypted = Column(Text)
    base_url = Column(Text)
    enabled = Column(Boolean, nullable=False, server_default=text("true"))
    config_json = Column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at = stamp()
    updated_at = stamp()
    __table_args__ = (
        CheckConstraint("provider = lower(provider)", name="ck_llm_configurations_provider_lower"),
        CheckConstraint(
            "jsonb_typeof(config_json) = 'object'",
            name="ck_llm_configurations_config_json_object",
        ),
        UniqueConstraint("provider", "model_name", name="uq_llm_configurations_provider_model"),
    )


@touched
class User(Base):
    __tablename__ = "users"
    id = key()
    username = Column(String(50), nullable=False, unique=True, index=True)
    email = Column(String(255), nullable=False, unique=True, index=True)
    hashed_password = Column(String(255), nullable=False)
    is_active = Column(Boolean, nullable=False, server_default=text("true"), index=True)
    is_superuser = Column(Boolean, nullable=False, server_default=text("false"))
    created_at = stamp()
    updated_at = stamp()
    role_id = Column(UUID, ForeignKey("roles.id", ondelete="RESTRICT"), index=True)
    department_id = Column(UUID, ForeignKey("departments.id", ondelete="RESTRICT"), index=True)
    __table_args__ = (
        CheckConstraint("hashed_password <> ''", name="ck_users_hashed_password_not_empty"),
    )


@touched
class DepartmentQuota(Base):
    __tablename__ = "department_quotas"
    id = key()
    department_id = Column(UUID, ForeignKey("departments.id", ondelete="CASCADE"), nullable=False)
    llm_config_id = Column(
        UUID, ForeignKey("llm_configurations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    monthly_limit_tokens = Column(BigInteger, nullable=False, server_default=text("0"))
    current_usage_tokens = Column(BigInteger, nullable=False, server_default=text("0"))
    last_reset = stamp()
    created_at = stamp()
    updated_at = stamp()
    __table_args__ = (
        CheckConstraint(
            "monthly_limit_tokens >= 0", name="ck_department_quotas_monthly_limit_tokens"
        ),
        CheckConstraint(
            "current_usage_tokens >= 0", name="ck_department_quotas_current_usage_tokens"
        ),
        UniqueConstraint("department_id", "llm_config_id", name="uq_department_llm_quota"),
    )


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    id = key()
    token_hash = Column(String(255), nullable=False, unique=True, index=True)
    user_id = Column(UUID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    expires_at = Column(DateTime(timezone=True), nullable=False, index=True)
    is_revoked = Column(Boolean, nullable=False, server_default=text("false"), index=True)
    revoked_at = Column(DateTime(timezone=True))
    remember_me = Column(Boolean, nullable=False, server_default=text("false"))
    user_agent = Column(Text)
    ip_address = Column(postgresql.INET)
    created_at = stamp()


class UsageLog(Base):
    __tablename__ = "usage_logs"
    id = key()
    user_id = Column(UUID, ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True)
    department_id = Column(
        UUID, ForeignKey("departments.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    llm_config_id = Column(
        UUID, ForeignKey("llm_configurations.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    timestamp = Column(DateTime(timezone=True), nullable=False, server_default=func.now(), index=True)
    tokens_prompt = Column(Integer, nullable=False, server_default=text("0"))
    tokens_completion = Column(Integer, nullable=False, server_default=text("0"))
    tokens_total = Column(Integer, Computed("tokens_prompt + tokens_completion", persisted=True))
    cost_estimated = Column(Numeric(14, 6), nullable=False, server_default=text("0"))
    request_details = Column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    response_details = Column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    __table_args__ = (
        CheckConstraint("tokens_prompt >= 0", name="ck_usage_logs_tokens_prompt"),
        CheckConstraint("tokens_completion >= 0", name="ck_usage_logs_tokens_completion"),
        CheckConstraint("cost_estimated >= 0", name="ck_usage_logs_cost_estimated"),
        CheckConstraint(
            "jsonb_typeof(request_details) = 'object'", name="ck_usage_logs_request_details_object"
        ),
        CheckConstraint(
            "jsonb_typeof(response_details) = 'object'",
            name="ck_usage_logs_response_details_object",
        ),
    )
