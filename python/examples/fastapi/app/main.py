"""A FastAPI app shaped like the AI Dock backend: its engine is built at import from
DATABASE_URL (async, asyncpg), requests get a session from `get_db`, and logins are verified
with bcrypt (what the backend's passlib context accepts)."""

import os

import bcrypt
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

engine = create_async_engine(
    os.environ.get("DATABASE_URL", "postgresql+asyncpg://aidock:aidock@127.0.0.1:54329/aidock")
)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_db():
    async with SessionLocal() as session:
        yield session


app = FastAPI()


@app.get("/departments")
async def departments(db: AsyncSession = Depends(get_db)) -> list:
    rows = await db.execute(text("SELECT name FROM departments ORDER BY name"))
    return [name for (name,) in rows]


class NewDepartment(BaseModel):
    name: str


@app.post("/departments", status_code=201)
async def add_department(new: NewDepartment, db: AsyncSession = Depends(get_db)) -> dict:
    await db.execute(text("INSERT INTO departments (name) VALUES (:name)"), {"name": new.name})
    await db.commit()
    return {"name": new.name}


class Login(BaseModel):
    username: str
    password: str


@app.post("/login")
async def login(body: Login, db: AsyncSession = Depends(get_db)) -> dict:
    row = (
        await db.execute(
            text("SELECT hashed_password FROM users WHERE username = :u AND is_active"),
            {"u": body.username},
        )
    ).first()
    if row is None or not bcrypt.checkpw(body.password.encode(), row[0].encode()):
        raise HTTPException(status_code=401, detail="wrong username or password")
    return {"username": body.username}
